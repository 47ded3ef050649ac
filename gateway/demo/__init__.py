"""`insitu demo`: synthetic departments, a cross-department job end to end, a denial, a verify."""
