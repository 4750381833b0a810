// The ring directory as the agent sees it: lists `*.ring` entries (names starting with '.' are a
// writer's files in the making and are skipped), and remembers which files it already refused, so a
// bad file is logged and counted once, not on every scan, and which files were still being created
// (magic 0 or shorter than a header), so those are retried for a grace period before being refused.
#pragma once

#include <chrono>
#include <string>
#include <unordered_map>
#include <vector>

#include "discover/file_identity.h"

namespace loopwatch::agent {

struct RingCandidate {
  std::string name;  // entry name inside the directory
  std::string path;  // directory + '/' + name
  FileIdentity identity;
  bool regular_file = false;  // lstat: false for symlinks, directories, FIFOs, ...
};

// Not thread safe: used by the scan on the agent's Asio thread only.
class RingDirectory {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kCreationGrace{5};

  explicit RingDirectory(std::string path);
  RingDirectory(const RingDirectory&) = delete;
  RingDirectory& operator=(const RingDirectory&) = delete;

  const std::string& path() const { return path_; }

  // Lists ring candidates, leaving out files refused before whose identity has not changed. Forgets
  // what it remembered about entries that disappeared. Returns false (errno in *error) if the
  // directory cannot be read.
  bool List(std::vector<RingCandidate>* out, int* error);

  // Remembers a refusal of `identity` under `name`. `whole_life`: ignore later size/mtime changes
  // (for rings refused after mapping, whose live writer keeps changing them). Returns true the
  // first time, i.e. when the refusal should be counted and logged.
  bool RememberRefused(const std::string& name, const FileIdentity& identity, bool whole_life);

  // For a file that is not ready yet: returns true once it has been not ready for kCreationGrace.
  bool CreationGraceOver(const std::string& name, const FileIdentity& identity, Clock::time_point now);
  void ForgetPending(const std::string& name) { pending_.erase(name); }

  std::size_t refused_count() const { return refused_.size(); }

 private:
  struct Refusal {
    FileIdentity identity;
    bool whole_life;
    bool Matches(const FileIdentity& other) const { return whole_life ? identity.SameInode(other) : identity == other; }
  };
  struct Pending {
    FileIdentity identity;
    Clock::time_point first_seen;
  };

  const std::string path_;
  std::unordered_map<std::string, Refusal> refused_;  // key: entry name
  std::unordered_map<std::string, Pending> pending_;  // key: entry name
};

// Creates `path` (and missing parents) if it does not exist, the last component with mode 0700.
// Returns false with a message if it cannot, or if `path` exists but is not a directory.
bool EnsureRingDirectory(const std::string& path, std::string* error);

}  // namespace loopwatch::agent
