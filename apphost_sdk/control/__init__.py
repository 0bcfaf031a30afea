"""The local control channel: ``apphost resource`` and ``apphost logs`` reach a running app host
(``apphost run`` or ``apphost start``, with or without the dashboard) through a 0600 Unix socket
in its state folder. ``protocol`` is the wire format, ``server`` the app host's end, ``client``
the CLI's."""
