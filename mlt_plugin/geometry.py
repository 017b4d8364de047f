"""Crop and response geometry (SiamFC conventions, paper section 3.2.1), defined once.

The parameter sets, the tracker, the networks' label maps and the training samplers all read these
names, so a change here keeps tracking and training in step.
"""
EXEMPLAR_SIZE = 127  # x: the template crop, pixels
INSTANCE_SIZE = 255  # z: the search crop, pixels
TOTAL_STRIDE = 8  # pixels of the search crop per response cell
RESPONSE_SIZE = (INSTANCE_SIZE - EXEMPLAR_SIZE) // TOTAL_STRIDE + 1  # 17 cells
CONTEXT_AMOUNT = 0.5  # context around the box: (w + h) / 2
LABEL_RADIUS = 2.0  # positive radius on the response label map, in cells (16 px in the search crop)
