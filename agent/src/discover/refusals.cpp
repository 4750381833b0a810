// Log + count + remember a refused ring file; see refusals.h.
#include "discover/refusals.h"

#include <spdlog/spdlog.h>

#include "expose/label_text.h"

namespace loopwatch::agent {

bool Refusals::Refuse(const std::string& name, const std::string& path, const FileIdentity& identity,
                      std::string_view reason, bool whole_life, std::string_view detail) {
  if (!directory_.RememberRefused(name, identity, whole_life)) return false;
  metrics_.CountRefused(reason);
  if (detail.empty()) {
    spdlog::warn("refused ring file {}: {}", ForLog(path), reason);
  } else {
    spdlog::warn("refused ring file {}: {} ({})", ForLog(path), reason, detail);
  }
  return true;
}

}  // namespace loopwatch::agent
