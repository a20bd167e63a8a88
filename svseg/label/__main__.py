from svseg.label.server import main

raise SystemExit(main())
