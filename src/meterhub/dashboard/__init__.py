"""The browser dashboard: its static files (``assets``), served under content-hashed names."""
