"""The four networks of the paper, one file each: SE, G, D_I and D_V."""

from s2vmodel.nets.discriminators import ImageDiscriminator, VideoDiscriminator
from s2vmodel.nets.generator import UNetGenerator
from s2vmodel.nets.sound_encoder import SoundEncoder

__all__ = ["ImageDiscriminator", "SoundEncoder", "UNetGenerator", "VideoDiscriminator"]
