from carsearch.cli import main

raise SystemExit(main())
