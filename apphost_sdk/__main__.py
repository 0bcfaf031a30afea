"""``python -m apphost_sdk`` is the ``apphost`` command."""

from .cli.main import main

raise SystemExit(main())
