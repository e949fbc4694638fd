from oncolabel.cli import main

raise SystemExit(main())
