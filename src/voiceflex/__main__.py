"""Entry point for `python -m voiceflex`."""

from voiceflex.cli import main

raise SystemExit(main())
