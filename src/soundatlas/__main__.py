from soundatlas.cli import main

raise SystemExit(main())
