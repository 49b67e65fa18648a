"""``python -m clearing_services.cli`` is the ``clearing`` command."""

from clearing_services.cli.main import main

main()
