"""What tradestack builds from source and caches outside the clone, keyed by version: the wheelhouse the hosts
install from (wheelhouse.py) and the OCI images the site clusters run (images.py, pyimage.py)."""
