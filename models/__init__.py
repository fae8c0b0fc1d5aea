"""THA1 networks in pure torch: `from models import FaceMorpher, TwoAlgoFaceRotator, Combiner, Poser`."""
from .blocks import Conv7Block, Down, EncoderDecoder, ResBlock, UNet, Up
from .combiner import Combiner
from .morpher import FaceMorpher
from .poser import Poser
from .rotator import TwoAlgoFaceRotator

NETWORKS = {"morpher": FaceMorpher, "rotator": TwoAlgoFaceRotator, "combiner": Combiner}

__all__ = ["FaceMorpher", "TwoAlgoFaceRotator", "Combiner", "Poser", "NETWORKS", "Conv7Block", "Down",
           "Up", "ResBlock", "EncoderDecoder", "UNet"]
