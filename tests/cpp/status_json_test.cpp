// Tests of the /api/status document (agent/src/status_json.h) and of the status the Agent publishes.
#include "expose/status_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent.h"
#include "test_ring.h"

namespace loopwatch::agent {
namespace {

using testing::LockHolder;
using testing::TempDir;
using testing::TestRing;

TEST(StatusJsonTest, RendersAgentAndRingFields) {
  AgentStatus status;
  status.version = "0.1.0";
  status.ring_dir = "/dev/shm/loopwatch";
  status.rings_mapped = 1;
  status.samples_drained = 12345;
  status.refused = {{"bad_magic", 2}};
  RingStatus ring;
  ring.file = "lw-7-1-1.ring";
  ring.service = "api";
  ring.pid = 7;
  ring.loop = 1;
  ring.kind = "uvloop";
  ring.thread = 8;
  ring.samples = 12345;
  ring.dropped = 3;
  ring.names = 4;
  ring.alive = false;
  ring.backlog = 9;
  status.rings.push_back(ring);

  const nlohmann::json json = nlohmann::json::parse(RenderStatusJson(status));
  EXPECT_EQ(json["agent"]["version"], "0.1.0");
  EXPECT_EQ(json["agent"]["ring_dir"], "/dev/shm/loopwatch");
  EXPECT_EQ(json["agent"]["rings_mapped"], 1);
  EXPECT_EQ(json["agent"]["samples_drained"], 12345);
  EXPECT_EQ(json["agent"]["refused"]["bad_magic"], 2);
  ASSERT_EQ(json["rings"].size(), 1u);
  const auto& r = json["rings"][0];
  EXPECT_EQ(r["file"], "lw-7-1-1.ring");
  EXPECT_EQ(r["service"], "api");
  EXPECT_EQ(r["pid"], 7);
  EXPECT_EQ(r["loop"], 1);
  EXPECT_EQ(r["kind"], "uvloop");
  EXPECT_EQ(r["thread"], 8);
  EXPECT_EQ(r["samples"], 12345);
  EXPECT_EQ(r["dropped"], 3);
  EXPECT_EQ(r["names"], 4);
  EXPECT_EQ(r["alive"], false);
  EXPECT_EQ(r["backlog"], 9);
}

TEST(StatusJsonTest, EmptyAgentHasEmptyRingsAndRefusedObject) {
  const nlohmann::json json = nlohmann::json::parse(RenderStatusJson(AgentStatus{}));
  EXPECT_TRUE(json["rings"].is_array());
  EXPECT_TRUE(json["rings"].empty());
  EXPECT_TRUE(json["agent"]["refused"].is_object());
}

TEST(StatusJsonTest, InvalidUtf8NeverThrows) {
  AgentStatus status;
  status.ring_dir = "/tmp/\xFF\xFE";
  EXPECT_NO_THROW(nlohmann::json::parse(RenderStatusJson(status)));
}

TEST(StatusJsonTest, AgentPublishesItsMappedRings) {
  TempDir dir;
  TestRing ring(dir.File("lw-4242-1-1.ring"));
  LockHolder holder(ring.path());
  ring.names().Append("a");
  ring.names().Append("b");
  for (int i = 0; i < 30; ++i) ring.Push(1000);
  Agent agent({dir.path(), {}});
  agent.Scan();
  agent.Drain();
  for (int i = 0; i < 4; ++i) ring.Push(1000);  // not drained yet: backlog

  agent.Scan();
  const nlohmann::json json = nlohmann::json::parse(agent.StatusJson());
  EXPECT_EQ(json["agent"]["ring_dir"], dir.path());
  EXPECT_EQ(json["agent"]["rings_mapped"], 1);
  EXPECT_EQ(json["agent"]["samples_drained"], 30);
  ASSERT_EQ(json["rings"].size(), 1u);
  const auto& r = json["rings"][0];
  EXPECT_EQ(r["file"], "lw-4242-1-1.ring");
  EXPECT_EQ(r["service"], "checkout");
  EXPECT_EQ(r["pid"], 4242);
  EXPECT_EQ(r["kind"], "uvloop");
  EXPECT_EQ(r["thread"], 4243);
  EXPECT_EQ(r["samples"], 30);
  EXPECT_EQ(r["names"], 2);
  EXPECT_EQ(r["alive"], true);
  EXPECT_EQ(r["backlog"], 4);
}

}  // namespace
}  // namespace loopwatch::agent
