#pragma once
// ...and another backend that includes the vocabulary header back: no file circle, but the rooms vocabulary and detail include each other.
#include "../vocabulary.hpp"
