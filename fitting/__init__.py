"""valuedyn.fitting"""
