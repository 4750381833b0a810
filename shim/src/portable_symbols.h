// Which glibc and libstdc++ symbol versions the extension needs, kept old on purpose: the wheel is
// built on Debian 12 (glibc 2.36, GCC 12) but must load on the systems users deploy to, which pip
// decides by the manylinux tag that `auditwheel show` reports (shim/README.md, "Wheels").
//
// Force-included (-include) into every translation unit of the extension (shim/setup.py,
// shim/CMakeLists.txt): a .symver directive binds the references of the object file it appears in.
//   - glibc 2.34 moved dlopen/dlsym and the pthread functions into libc with new versions; the old
//     ones are still exported, so each reference is bound to the version that has existed since the
//     function did. Nothing here changes behaviour: the old and new versions are the same code.
//   - fstat became a real symbol only in glibc 2.33 (before, an inline call of __fxstat64): the
//     extension calls the system call instead (FileStatus), whose struct is glibc's on x86_64.
//   - libstdc++: see portable_symbols.cpp.
// Anything else that needs a newer version shows up in tests/python/test_wheel.py, which checks
// the built wheel's symbol versions and auditwheel's verdict.
#pragma once

#include <features.h>  // defines __GLIBC__: this header comes before every other one

#if defined(__x86_64__) && defined(__GLIBC__) && !defined(LOOPWATCH_NO_SYMBOL_PINS)
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver pthread_sigmask,pthread_sigmask@GLIBC_2.2.5");
__asm__(".symver pthread_setname_np,pthread_setname_np@GLIBC_2.12");
#endif

#ifdef __cplusplus
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace loopwatch::shim {

// fstat(2) without glibc's 2.33 symbol.
inline int FileStatus(int fd, struct stat* status) {
#if defined(__x86_64__) && defined(SYS_fstat)
  return static_cast<int>(syscall(SYS_fstat, fd, status));
#else
  return fstat(fd, status);
#endif
}

}  // namespace loopwatch::shim
#endif
