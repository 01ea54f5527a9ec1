"""valuedyn.papers"""
