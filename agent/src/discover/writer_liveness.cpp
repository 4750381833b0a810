// F_GETLK probe of a ring file's writer lock; see writer_liveness.h.
#include "discover/writer_liveness.h"

#include <fcntl.h>

namespace loopwatch::agent {

WriterState QueryWriter(int fd) {
  struct flock probe {};
  probe.l_type = F_RDLCK;  // conflicts with the writer's F_WRLCK (and with OFD write locks)
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 0;  // the whole file
  if (fcntl(fd, F_GETLK, &probe) != 0) return WriterState::kUnknown;
  return probe.l_type == F_UNLCK ? WriterState::kGone : WriterState::kAlive;
}

}  // namespace loopwatch::agent
