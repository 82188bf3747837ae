// Must not compile: std::list iterators are not random-access.
#include <dpar/dpar.hpp>
#include <list>
int main() {
  std::list<int> l{1, 2, 3};
  return dpar::reduce(dpar::par, l.begin(), l.end(), 0);
}
