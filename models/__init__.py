"""valuedyn.models"""
