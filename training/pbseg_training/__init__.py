"""Training framework of PediatricBoneSeg: reproduces the shared multi-domain network outside Slicer.

The network, preprocessing and model files come from ``PediatricBoneSegLib``; nothing here redefines them.
"""
