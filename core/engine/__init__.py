"""Engine: the paper's model (LipField, Gamem, BlendNet, DetailNet, SyncExpert), its losses and the training loop."""
