"""image2point: 2D image-pretrained ConvNets as 3D sparse ConvNets for point clouds."""

__version__ = "0.1.0"
