#pragma once
// Included first by the umbrella headers: below C++20 dpar's concepts would
// fail with a cascade of unrelated errors, so stop here with one clear message.
// (#error alone lets g++ go on compiling; the missing include ends the run.)

#if defined(_MSVC_LANG) ? _MSVC_LANG < 202002L : __cplusplus < 202002L
#error "dpar needs C++20: compile with -std=c++20 (CMake: link dpar::dpar, which requires cxx_std_20)"
#include "dpar needs C++20; compilation stopped"
#endif
