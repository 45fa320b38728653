"""An ICU-Bench unlearning method distributed as its own package: SimNPO (``icu_custom_method.simnpo``)."""
