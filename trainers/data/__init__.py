"""Training data for the VA trainers: the frame clock, inputs by index, and the example views."""
