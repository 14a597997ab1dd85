"""A few sentences for calibration and fidelity checks when no data is given."""

SAMPLE_SENTENCES = (
    "The movie was a delight from start to finish.",
    "I would not recommend this restaurant to anyone.",
    "Optical neural networks compute matrix products with light.",
    "The committee postponed its decision until next week.",
    "She quickly realised that the map was upside down.",
    "A gripping, beautifully acted drama that never loses its nerve.",
    "The battery died after only two hours of use.",
    "Researchers measured the energy cost of each multiply-accumulate.",
    "He said the package would arrive on Tuesday, but it never came.",
    "Quantization maps continuous values to a small set of levels.",
    "The soup was cold and the service was slow.",
    "What a wonderful surprise to see you here!",
    "The river flooded the lower part of the town last spring.",
    "Photonic chips promise low latency for transformer inference.",
    "This is the worst sequel in the history of the franchise.",
    "The children built a sandcastle taller than themselves.",
)
