"""FTP behind ``protocol: ftp``: the jail, accounts over the portal, sessions, data path."""
