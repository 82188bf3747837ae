#pragma once
// The machine's FP32 FMA peak (fma_peak.cpp), for figures stated as a
// fraction of it: GFLOP/s of `threads` threads each running independent
// chains of FMAs on the widest vectors the CPU has; the best of three timed
// runs, measured once per thread count and process. 0 if the CPU has no FMA.
double fma_peak_gflops(unsigned threads);
