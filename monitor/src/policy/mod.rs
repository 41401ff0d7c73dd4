//! What the guest is shown: CPUID leaves and MSRs.
