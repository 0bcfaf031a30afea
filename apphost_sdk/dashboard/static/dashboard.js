// Live updates of the apphost dashboard, without a build step: a server-sent event stream per
// page ("changed" -> re-fetch this page's content with X-Fragment: 1 and swap it, keeping scroll
// and open <details>; "line" -> append rendered console lines, following the bottom when
// #follow is checked), and the buttons for resource commands and revealing secret values.
(function () {
  "use strict";
  const main = document.getElementById("content");
  const toast = document.getElementById("toast");
  const MAX_LINES = 10000;
  if (!main) return;

  function notify(text, ok) {
    if (!toast) return;
    toast.textContent = text;
    toast.className = ok ? "ok" : "failed";
    toast.hidden = false;
    clearTimeout(notify.timer);
    notify.timer = setTimeout(function () { toast.hidden = true; }, ok ? 4000 : 10000);
  }

  // Values the user chose to show stay shown when the content is swapped.
  const revealed = new Map();
  function revealKey(b) { return b.dataset.resource + "\u0000" + b.dataset.variable; }
  function showValue(button, value) {
    const code = button.parentElement.querySelector("code.env-value");
    if (button.dataset.masked === undefined) button.dataset.masked = code.textContent;
    code.textContent = value;
    button.textContent = "Hide";
  }

  function detailsKey(d, i) { return d.dataset.key || "#" + i; }

  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const open = new Set();
      main.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.add(detailsKey(d, i)); });
      const x = window.scrollX, y = window.scrollY;
      const r = await fetch(location.href, { headers: { "X-Fragment": "1" }, credentials: "same-origin" });
      if (r.redirected || r.status === 401) { location.reload(); return; }
      if (!r.ok && r.status !== 404) return;
      main.innerHTML = await r.text();
      main.querySelectorAll("details").forEach(function (d, i) { if (open.has(detailsKey(d, i))) d.open = true; });
      main.querySelectorAll("button.reveal").forEach(function (b) {
        if (revealed.has(revealKey(b))) showValue(b, revealed.get(revealKey(b)));
      });
      window.scrollTo(x, y);
    } catch (e) { /* the next change retries */ } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  function follow(con) {
    const box = document.getElementById("follow");
    if (!box || box.checked) con.scrollTop = con.scrollHeight;
  }

  function append(html) {
    const con = document.getElementById("console");
    if (!con) return;
    con.insertAdjacentHTML("beforeend", html);
    let extra = con.children.length - MAX_LINES;
    while (extra-- > 0) con.removeChild(con.firstElementChild);
    follow(con);
  }

  function dropped(n) {
    let note = main.querySelector("p.dropped");
    if (Number(n) <= 0) return;
    if (!note) {
      note = document.createElement("p");
      note.className = "dropped";
      const con = document.getElementById("console");
      if (con) con.before(note); else return;
    }
    note.textContent = n + " older entries dropped";
  }

  function subscribe() {
    const topic = main.dataset.topic;
    if (!topic || !window.EventSource) return;
    const params = new URLSearchParams({ topic: topic });
    if (main.dataset.resource) params.set("resource", main.dataset.resource);
    const con = document.getElementById("console");
    if (con) params.set("after", con.dataset.after || "0");
    const events = new EventSource("/api/events?" + params.toString());
    events.addEventListener("changed", refresh);
    // A change between rendering this page and (re)connecting has no event: fetch once.
    if (!con) events.addEventListener("open", refresh);
    events.addEventListener("line", function (e) { append(e.data); });
    events.addEventListener("dropped", function (e) { dropped(e.data); });
  }

  async function post(url) {
    const r = await fetch(url, { method: "POST", credentials: "same-origin" });
    let body = {};
    try { body = await r.json(); } catch (e) { /* not JSON */ }
    return { status: r.status, body: body };
  }

  document.addEventListener("click", async function (e) {
    const button = e.target.closest("button.command, button.reveal");
    if (!button) return;
    const res = encodeURIComponent(button.dataset.resource);
    if (button.classList.contains("command")) {
      const cmd = button.dataset.command;
      button.disabled = true;
      notify(cmd + " " + button.dataset.resource + "…", true);
      const r = await post("/api/resources/" + res + "/commands/" + encodeURIComponent(cmd));
      notify(r.body.message || r.body.error || (cmd + ": HTTP " + r.status), r.status === 200);
      refresh();
      return;
    }
    if (button.dataset.masked !== undefined) {
      button.parentElement.querySelector("code.env-value").textContent = button.dataset.masked;
      delete button.dataset.masked;
      revealed.delete(revealKey(button));
      button.textContent = "Show";
      return;
    }
    const name = encodeURIComponent(button.dataset.variable);
    const r = await post("/api/resources/" + res + "/environment/" + name + "/reveal");
    if (r.status !== 200) { notify(r.body.error || "cannot show it", false); return; }
    revealed.set(revealKey(button), r.body.value);
    main.querySelectorAll("button.reveal").forEach(function (b) {
      if (revealKey(b) === revealKey(button)) showValue(b, r.body.value);
    });
  });

  document.addEventListener("change", function (e) {
    const con = document.getElementById("console");
    if (con && e.target.id === "follow") follow(con);
  });
  const con = document.getElementById("console");
  if (con) follow(con);
  subscribe();
})();
