"""The Slicer side, without Qt: ``logic`` (``PediatricBoneSegLogic``, the scripting API), ``parameters``
(the panel's inputs and why they are not ready), ``dependencies`` (PyTorch through Slicer's PyTorch
extension), ``scene_transaction`` (all-or-nothing scene changes), the MRML node builders
(``volume``, ``segmentation``, ``models``, ``table``, ``hierarchy``) and ``self_test`` (the
module's self-test scenario). Only ``logic`` imports ``slicer``, and only when it is not given a
scene.
"""
