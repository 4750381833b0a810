// libstdc++ side of portable_symbols.h. GCC 11+ headers make `new T[n]` and std::allocator call
// std::__throw_bad_array_new_length(), which libstdc++ exports only from GLIBCXX_3.4.29 (GCC 11).
// A private definition here resolves those references inside the extension, so it runs with the
// libstdc++ of GCC 6 and later (GLIBCXX_3.4.22: std::thread), as the manylinux policies expect.
// Behaviour is the library's own: it throws std::bad_array_new_length.
#include <new>

namespace std {
[[noreturn]] __attribute__((visibility("hidden"))) void __throw_bad_array_new_length() { throw bad_array_new_length(); }
}  // namespace std
