// Tests of HttpApi (agent/src/http_api.h) with the agent's routes (agent_routes.h) on a real
// prometheus::Exposer bound to port 0: /api/status, /api/stalls and /api/slow are served as JSON,
// /metrics by our writer (and counts as a scrape), /api/control only when enabled, anything else 404s.
#include "expose/http_api.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/exposer.h>

#include "agent.h"
#include "expose/agent_routes.h"
#include "test_ring.h"

namespace loopwatch::agent {
namespace {

using testing::LockHolder;
using testing::TempDir;
using testing::TestRing;

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

// A minimal HTTP/1.0 client: one request, read to EOF.
HttpReply Request(int port, const std::string& method, const std::string& path, in_addr_t host = htonl(INADDR_LOOPBACK)) {
  HttpReply reply;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = host;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return reply;
  }
  const std::string request = method + " " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return reply;
  }
  std::string raw;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) raw.append(buffer, static_cast<std::size_t>(n));
  close(fd);
  const auto header_end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || header_end == std::string::npos) return reply;
  reply.status = std::stoi(raw.substr(9, 3));
  reply.headers = raw.substr(0, header_end);
  reply.body = raw.substr(header_end + 4);
  return reply;
}

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ring_ = std::make_unique<TestRing>(dir_.File("lw-4242-1-1.ring"));
    holder_ = std::make_unique<LockHolder>(ring_->path());
    for (int i = 0; i < 5; ++i) ring_->Push(2000);
    agent_.Scan();
    agent_.Drain();
    // The test thread is the agent's thread: control jobs run right away.
    auto run_here = [](std::function<nlohmann::json()> job) -> std::optional<nlohmann::json> { return job(); };
    api_ = std::make_unique<HttpApi>([this](std::string& out) { agent_.AppendMetricsText(out); },
                                     AgentRoutes(agent_, ControlEnabled(), run_here));
    exposer_ = std::make_unique<prometheus::Exposer>("127.0.0.1:0", 2, api_->callbacks());
    ASSERT_FALSE(exposer_->GetListeningPorts().empty());
    port_ = exposer_->GetListeningPorts().front();
    ASSERT_GT(port_, 0);
  }
  void TearDown() override { exposer_.reset(); }
  virtual bool ControlEnabled() const { return false; }

  TempDir dir_;
  std::unique_ptr<TestRing> ring_;
  std::unique_ptr<LockHolder> holder_;
  Agent agent_{{dir_.path(), {}}};
  std::unique_ptr<HttpApi> api_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

TEST_F(HttpApiTest, ServesStatusJson) {
  const HttpReply reply = Request(port_, "GET", "/api/status");
  ASSERT_EQ(reply.status, 200);
  EXPECT_NE(reply.headers.find("Content-Type: application/json"), std::string::npos);
  const nlohmann::json json = nlohmann::json::parse(reply.body);
  EXPECT_EQ(json["agent"]["rings_mapped"], 1);
  ASSERT_EQ(json["rings"].size(), 1u);
  EXPECT_EQ(json["rings"][0]["samples"], 5);
}

TEST_F(HttpApiTest, ServesMetricsAndCountsTheScrape) {
  const uint64_t before = agent_.scrape_counter()->scrapes();
  const HttpReply reply = Request(port_, "GET", "/metrics");
  ASSERT_EQ(reply.status, 200);
  EXPECT_NE(reply.body.find("loopwatch_callbacks_total{loop=\"1\",pid=\"4242\",service=\"checkout\"} 5"), std::string::npos)
      << reply.body;
  EXPECT_NE(reply.body.find("# TYPE loopwatch_callback_duration_seconds histogram"), std::string::npos);
  EXPECT_EQ(agent_.scrape_counter()->scrapes(), before + 1);
}

// `/` is the live page: self-contained HTML whose Content-Security-Policy lets it reach only this
// agent, so a name from a ring can neither load nor send anything elsewhere.
TEST_F(HttpApiTest, ServesTheLivePageWithAStrictContentSecurityPolicy) {
  const HttpReply reply = Request(port_, "GET", "/");
  ASSERT_EQ(reply.status, 200);
  EXPECT_NE(reply.headers.find("Content-Type: text/html; charset=utf-8"), std::string::npos) << reply.headers;
  EXPECT_NE(reply.headers.find("Content-Security-Policy: default-src 'none';"), std::string::npos) << reply.headers;
  EXPECT_NE(reply.headers.find("connect-src 'self'"), std::string::npos) << reply.headers;
  EXPECT_NE(reply.headers.find("X-Content-Type-Options: nosniff"), std::string::npos) << reply.headers;
  EXPECT_EQ(reply.body.rfind("<!doctype html>", 0), 0u);
  EXPECT_NE(reply.body.find("fetch(\"api/status\""), std::string::npos);
  // Bundled: nothing is loaded from another host.
  for (const char* external : {"src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url("}) {
    EXPECT_EQ(reply.body.find(external), std::string::npos) << external;
  }
  EXPECT_EQ(reply.body.find("innerHTML"), std::string::npos) << "ring names must only ever be set as text";
  EXPECT_EQ(Request(port_, "POST", "/").status, 405);
}

TEST_F(HttpApiTest, OtherPathsAreNotFound) {
  EXPECT_EQ(Request(port_, "GET", "/index.html").status, 404);
  EXPECT_EQ(Request(port_, "GET", "/etc/passwd").status, 404);
  EXPECT_EQ(Request(port_, "GET", "/api/status/x").status, 404);
}

// CivetWeb serves files only with a document_root, which the agent never sets: neither the working
// directory, nor the ring directory, nor a traversal reaches a file, and no directory is listed.
TEST_F(HttpApiTest, ServesNoFilesAndListsNoDirectories) {
  TempDir cwd;
  { std::ofstream(cwd.File("secret.txt")) << "do-not-serve"; }
  const std::string ring_name = "lw-4242-1-1.ring";
  char previous[4096];
  ASSERT_NE(getcwd(previous, sizeof(previous)), nullptr);
  ASSERT_EQ(chdir(cwd.path().c_str()), 0);
  std::vector<HttpReply> replies;
  for (const std::string& path : std::vector<std::string>{"/secret.txt", "/./secret.txt", "/../secret.txt", "/%2e%2e/secret.txt",
                                 "/metrics/../secret.txt", "/api/", "/" + ring_name, "/tmp/", dir_.File(ring_name)}) {
    replies.push_back(Request(port_, "GET", path));
    EXPECT_EQ(replies.back().status, 404) << path;
  }
  ASSERT_EQ(chdir(previous), 0);
  replies.push_back(Request(port_, "GET", "/"));  // the live page, not a listing of the working directory
  EXPECT_EQ(replies.back().status, 200);
  for (const HttpReply& reply : replies) {
    EXPECT_EQ(reply.body.find("do-not-serve"), std::string::npos);
    EXPECT_EQ(reply.body.find("Index of"), std::string::npos);
  }
  for (const char* method : {"PUT", "DELETE", "PROPFIND", "MKCOL"}) {
    EXPECT_GE(Request(port_, method, "/secret.txt").status, 400) << method;
  }
}

TEST_F(HttpApiTest, RefusesOtherMethodsOnStatus) { EXPECT_EQ(Request(port_, "POST", "/api/status").status, 405); }

TEST_F(HttpApiTest, ServesStallsAndSlowEventsAsJson) {
  for (const char* path : {"/api/stalls", "/api/slow"}) {
    const HttpReply reply = Request(port_, "GET", path);
    ASSERT_EQ(reply.status, 200) << path;
    const nlohmann::json json = nlohmann::json::parse(reply.body);
    EXPECT_TRUE(json["events"].is_array()) << path;
    EXPECT_GT(json["capacity"].get<int>(), 0) << path;
  }
}

TEST_F(HttpApiTest, ControlIsOffByDefault) {
  const HttpReply reply = Request(port_, "POST", "/api/control?action=pause&pid=4242");
  EXPECT_EQ(reply.status, 403);
  EXPECT_NE(reply.body.find("--web.enable-control"), std::string::npos);
  EXPECT_EQ(ring_->header()->control.load() & protocol::kControlPaused, 0u);
}

class HttpControlTest : public HttpApiTest {
 protected:
  bool ControlEnabled() const override { return true; }
};

TEST_F(HttpControlTest, PausesAndResumesAProcesssShim) {
  HttpReply reply = Request(port_, "POST", "/api/control?action=pause&pid=4242");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(nlohmann::json::parse(reply.body)["rings"].size(), 1u);
  EXPECT_NE(ring_->header()->control.load() & protocol::kControlPaused, 0u);
  EXPECT_NE(ring_->header()->control.load() & protocol::kControlValid, 0u);  // still attached
  EXPECT_TRUE(nlohmann::json::parse(Request(port_, "GET", "/api/status").body)["rings"][0]["paused"].get<bool>());
  reply = Request(port_, "POST", "/api/control?action=resume&pid=4242&loop=1");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(ring_->header()->control.load() & protocol::kControlPaused, 0u);
}

// This host's first IPv4 address outside 127.0.0.0/8 (network byte order), or 0.
in_addr_t NonLoopbackAddress() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return 0;
  in_addr_t found = 0;
  for (ifaddrs* entry = list; entry != nullptr && found == 0; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET) continue;
    const in_addr_t address = reinterpret_cast<sockaddr_in*>(entry->ifa_addr)->sin_addr.s_addr;
    if ((ntohl(address) >> 24) != 127) found = address;
  }
  freeifaddrs(list);
  return found;
}

TEST(HttpControlRemoteTest, AnswersLoopbackClientsOnly) {
  const in_addr_t external = NonLoopbackAddress();
  if (external == 0) GTEST_SKIP() << "this host has no IPv4 address besides loopback";
  TempDir dir;
  TestRing ring(dir.File("lw-4242-1-1.ring"));
  LockHolder holder(ring.path());
  Agent agent({dir.path(), {}});
  agent.Scan();
  auto run_here = [](std::function<nlohmann::json()> job) -> std::optional<nlohmann::json> { return job(); };
  HttpApi api([&agent](std::string& out) { agent.AppendMetricsText(out); }, AgentRoutes(agent, true, run_here));
  prometheus::Exposer exposer("0.0.0.0:0", 2, api.callbacks());
  const int port = exposer.GetListeningPorts().front();
  const HttpReply remote = Request(port, "POST", "/api/control?action=pause&pid=4242", external);
  EXPECT_EQ(remote.status, 403) << remote.body;
  EXPECT_NE(remote.body.find("loopback"), std::string::npos);
  EXPECT_EQ(ring.header()->control.load() & protocol::kControlPaused, 0u);
  EXPECT_EQ(Request(port, "GET", "/api/status", external).status, 200);  // read-only routes answer anyone
}

TEST_F(HttpControlTest, RejectsBadRequests) {
  EXPECT_EQ(Request(port_, "POST", "/api/control?action=explode&pid=4242").status, 400);
  EXPECT_EQ(Request(port_, "POST", "/api/control?action=pause").status, 400);
  EXPECT_EQ(Request(port_, "POST", "/api/control?action=pause&pid=42x").status, 400);
  EXPECT_EQ(Request(port_, "POST", "/api/control?action=pause&pid=4242&loop=-1").status, 400);
  EXPECT_EQ(Request(port_, "POST", "/api/control?action=pause&pid=999").status, 404);
  EXPECT_EQ(Request(port_, "GET", "/api/control?action=pause&pid=4242").status, 405);
  EXPECT_EQ(ring_->header()->control.load() & protocol::kControlPaused, 0u);
}

TEST(HttpApiSingletonTest, OnlyOneInstanceAtATime) {
  const auto metrics = [](std::string&) {};
  HttpApi first(metrics, {});
  EXPECT_THROW(HttpApi(metrics, {}), std::logic_error);
}

}  // namespace
}  // namespace loopwatch::agent
