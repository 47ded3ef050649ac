"""One release function per template kind, behind one signature."""
