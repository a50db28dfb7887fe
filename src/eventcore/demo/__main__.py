from eventcore.cli import main

raise SystemExit(main(["demo"]))
