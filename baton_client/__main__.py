"""``python -m baton_client``: the same as the ``baton`` command."""

from baton_client.main import main

main()
