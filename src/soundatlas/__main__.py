"""``python -m soundatlas``: the command line (:func:`soundatlas.cli.main`)."""

from soundatlas.cli import main

raise SystemExit(main())
