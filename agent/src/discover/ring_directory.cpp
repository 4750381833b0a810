// Directory listing and refusal memory; see ring_directory.h.
#include "discover/ring_directory.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>
#include <unordered_set>

namespace loopwatch::agent {
namespace {

bool IsRingName(std::string_view name) {
  constexpr std::string_view kSuffix = ".ring";
  return !name.empty() && name.front() != '.' && name.size() > kSuffix.size() && name.ends_with(kSuffix);
}

struct DirCloser {
  void operator()(DIR* dir) const { closedir(dir); }
};

// Drops remembered entries whose name is no longer listed.
template <typename Map>
void ForgetMissing(Map& map, const std::unordered_set<std::string>& seen) {
  for (auto it = map.begin(); it != map.end();) {
    it = seen.count(it->first) == 0 ? map.erase(it) : std::next(it);
  }
}

}  // namespace

RingDirectory::RingDirectory(std::string path) : path_(std::move(path)) {}

bool RingDirectory::List(std::vector<RingCandidate>* out, int* error) {
  out->clear();
  std::unique_ptr<DIR, DirCloser> dir(opendir(path_.c_str()));
  if (!dir) {
    if (error != nullptr) *error = errno;
    return false;
  }
  std::unordered_set<std::string> seen;
  const int dir_fd = dirfd(dir.get());
  errno = 0;
  while (const dirent* entry = readdir(dir.get())) {
    const std::string_view name = entry->d_name;
    if (!IsRingName(name)) continue;
    struct stat st {};
    if (fstatat(dir_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone already
    RingCandidate candidate{std::string(name), path_ + "/" + std::string(name), FileIdentity::FromStat(st),
                            S_ISREG(st.st_mode)};
    seen.insert(candidate.name);
    auto refused = refused_.find(candidate.name);
    if (refused != refused_.end()) {
      if (refused->second.Matches(candidate.identity)) continue;
      refused_.erase(refused);  // replaced or rewritten: look again
    }
    out->push_back(std::move(candidate));
  }
  ForgetMissing(refused_, seen);
  ForgetMissing(pending_, seen);
  return true;
}

bool RingDirectory::RememberRefused(const std::string& name, const FileIdentity& identity, bool whole_life) {
  pending_.erase(name);
  auto [it, inserted] = refused_.try_emplace(name, Refusal{identity, whole_life});
  if (inserted) return true;
  if (it->second.Matches(identity)) return false;
  it->second = Refusal{identity, whole_life};
  return true;
}

bool RingDirectory::CreationGraceOver(const std::string& name, const FileIdentity& identity, Clock::time_point now) {
  auto [it, inserted] = pending_.try_emplace(name, Pending{identity, now});
  if (!inserted && !it->second.identity.SameInode(identity)) it->second = Pending{identity, now};  // a new file
  return now - it->second.first_seen >= kCreationGrace;
}

bool EnsureRingDirectory(const std::string& path, std::string* error) {
  std::error_code ec;
  const auto status = std::filesystem::symlink_status(path, ec);
  if (std::filesystem::is_directory(status)) return true;
  if (std::filesystem::exists(status)) {
    *error = "ring directory " + path + " exists but is not a directory";
    return false;
  }
  const std::filesystem::path dir(path);
  if (dir.has_parent_path() && !std::filesystem::create_directories(dir.parent_path(), ec) && ec) {
    *error = "cannot create " + dir.parent_path().string() + ": " + ec.message();
    return false;
  }
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    *error = "cannot create ring directory " + path + ": " + std::strerror(errno);
    return false;
  }
  if (!std::filesystem::is_directory(path, ec)) {
    *error = "ring directory " + path + " is not a directory";
    return false;
  }
  return true;
}

}  // namespace loopwatch::agent
