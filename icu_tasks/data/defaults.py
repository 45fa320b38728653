"""Defaults that the command line shows in its help, importable without the generator's dependencies (Faker,
Pillow, pyarrow): building ``icu-bench``'s parser must not cost the start-up of the data generator."""

#: Document side in px the layouts are designed at, and the generated images' default size (448: readable by
#: real VLMs; the portrait is ~144 px, ~20 px at a 64-px model input).
IMAGE_SIZE = 448
