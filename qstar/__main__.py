from qstar.cli import main

raise SystemExit(main())
