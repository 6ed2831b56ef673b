"""Channel counts every floor shares: a point's coordinates and a colour (or an image pixel)."""

XYZ_CHANNELS = 3
RGB_CHANNELS = 3
