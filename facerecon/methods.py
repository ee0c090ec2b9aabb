"""The reconstruction methods, by name (one list for the API, the CLI and the evaluation).

- ``fit``: Face Mesh landmarks + model fit (the default);
- ``dense``: the landmark network fine-tuned on the ICT surface + model fit, no contour sliding;
- ``regress``: CNN position map + linear fit;
- ``guided``: the position-map CNN given the fit's 68 landmarks as heatmaps too;
- ``vrn``: CNN occupancy volume + ICP registration (MODEL_CARD.md).
"""
METHODS = ("fit", "dense", "regress", "guided", "vrn")
DEFAULT_METHOD = "fit"
