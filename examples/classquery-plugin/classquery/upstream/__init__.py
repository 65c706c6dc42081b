"""The method's own code, laid out as a vendored upstream repository would be: the backbone
trunk and the class-query head in their own modules, imported relatively."""

from .backbone import resnet_trunk
from .head import ClassQueryHead

__all__ = ["ClassQueryHead", "resnet_trunk"]
