// Placeholder: the L1 test kernel is being written.
