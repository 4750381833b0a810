// Tests of the command line (agent/src/agent_config.h): defaults, flags, environment variables,
// and exit code 2 (never a crash) for anything invalid.
#include "agent_config.h"

#include <stdlib.h>

#include <gtest/gtest.h>

#include <vector>

namespace loopwatch::agent {
namespace {

ConfigParse Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "loopwatch-agent");
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  ConfigParse parse = ParseAgentConfig(static_cast<int>(args.size()), args.data());
  testing::internal::GetCapturedStdout();
  testing::internal::GetCapturedStderr();
  return parse;
}

TEST(AgentConfigTest, DefaultsMatchTheDocumentedValues) {
  const ConfigParse parse = Parse({});
  ASSERT_TRUE(parse.config);
  EXPECT_EQ(parse.config->listen_address, "127.0.0.1:9477");
  EXPECT_EQ(parse.config->ring_dir, "/dev/shm/loopwatch");
  EXPECT_EQ(parse.config->drain_interval_ms, 50u);
  EXPECT_EQ(parse.config->scan_interval_ms, 500u);
  EXPECT_EQ(parse.config->top_k, 20u);
  EXPECT_EQ(parse.config->slow_threshold_ms, 100.0);
  EXPECT_EQ(parse.config->log_level, "info");
  EXPECT_TRUE(parse.config->allowed_uids.empty());  // only the agent's own uid
}

TEST(AgentConfigTest, ReadsDottedFlags) {
  const ConfigParse parse = Parse({"--web.listen-address", "0.0.0.0:0", "--ring.dir", "/tmp/x", "--drain.interval",
                                   "10", "--scan.interval", "250", "--callbacks.top-k", "7", "--slow.threshold", "2.5",
                                   "--log.level", "debug", "--ring.allowed-uids", "1000,0"});
  ASSERT_TRUE(parse.config);
  EXPECT_EQ(parse.config->listen_address, "0.0.0.0:0");
  EXPECT_EQ(parse.config->ring_dir, "/tmp/x");
  EXPECT_EQ(parse.config->drain_interval_ms, 10u);
  EXPECT_EQ(parse.config->scan_interval_ms, 250u);
  EXPECT_EQ(parse.config->top_k, 7u);
  EXPECT_EQ(parse.config->slow_threshold_ms, 2.5);
  EXPECT_EQ(parse.config->log_level, "debug");
  EXPECT_EQ(parse.config->allowed_uids, (std::vector<uint32_t>{1000, 0}));
}

TEST(AgentConfigTest, ReadsEnvironmentVariables) {
  setenv("LOOPWATCH_TOP_K", "33", 1);
  setenv("LOOPWATCH_DIR", "/tmp/from-env", 1);
  const ConfigParse from_env = Parse({});
  const ConfigParse flag_wins = Parse({"--callbacks.top-k", "4"});
  unsetenv("LOOPWATCH_TOP_K");
  unsetenv("LOOPWATCH_DIR");
  ASSERT_TRUE(from_env.config);
  EXPECT_EQ(from_env.config->top_k, 33u);
  EXPECT_EQ(from_env.config->ring_dir, "/tmp/from-env");
  ASSERT_TRUE(flag_wins.config);
  EXPECT_EQ(flag_wins.config->top_k, 4u);
}

TEST(AgentConfigTest, RejectsBadValuesWithExitCode2) {
  for (const std::vector<const char*>& args : std::vector<std::vector<const char*>>{
           {"--drain.interval", "0"},
           {"--drain.interval", "10001"},
           {"--callbacks.top-k", "abc"},
           {"--callbacks.top-k", "1001"},
           {"--log.level", "verbose"},
           {"--web.listen-address", "nohost"},
           {"--web.listen-address", "127.0.0.1:70000"},
           {"--no.such-flag"},
           {"--ring.dir"},
           {"--ring.allowed-uids", "alice"},
           {"--ring.allowed-uids", "1000,-1"},
       }) {
    const ConfigParse parse = Parse(args);
    EXPECT_FALSE(parse.config) << args[0];
    EXPECT_EQ(parse.exit_code, 2) << args[0];
  }
  setenv("LOOPWATCH_DRAIN_INTERVAL", "-5", 1);
  const ConfigParse bad_env = Parse({});
  unsetenv("LOOPWATCH_DRAIN_INTERVAL");
  EXPECT_FALSE(bad_env.config);
  EXPECT_EQ(bad_env.exit_code, 2);
}

TEST(AgentConfigTest, HelpExitsZeroWithoutRunning) {
  const ConfigParse parse = Parse({"--help"});
  EXPECT_FALSE(parse.config);
  EXPECT_EQ(parse.exit_code, 0);
}

TEST(AgentConfigTest, ParsesListenAddresses) {
  std::string error;
  auto v4 = ParseListenAddress("127.0.0.1:9477", &error);
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 9477);
  EXPECT_EQ(v4->civetweb_spec, "127.0.0.1:9477");
  auto v6 = ParseListenAddress("[::1]:0", &error);
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->civetweb_spec, "[::1]:0");
  auto local = ParseListenAddress("localhost:80", &error);
  ASSERT_TRUE(local);
  EXPECT_EQ(local->civetweb_spec, "127.0.0.1:80");
  EXPECT_FALSE(ParseListenAddress("example.com:80", &error));
  EXPECT_FALSE(ParseListenAddress(":80", &error));
  EXPECT_FALSE(ParseListenAddress("127.0.0.1:", &error));
  EXPECT_FALSE(ParseListenAddress("127.0.0.1:-1", &error));
  EXPECT_FALSE(ParseListenAddress("127.0.0.1:80x", &error));
  EXPECT_NE(error, "");
}

}  // namespace
}  // namespace loopwatch::agent
