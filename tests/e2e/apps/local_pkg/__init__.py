VALUE = "from local_pkg"
