from valuedyn.cli import entry

entry()
