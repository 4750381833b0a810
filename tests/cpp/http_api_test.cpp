// Tests of HttpApi (agent/src/http_api.h) on a real prometheus::Exposer bound to port 0: /api/status
// is served as JSON, /metrics still comes from the Exposer (and counts as a scrape), anything else 404s.
#include "http_api.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <prometheus/exposer.h>

#include "agent.h"
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
HttpReply Request(int port, const std::string& method, const std::string& path) {
  HttpReply reply;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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
    exposer_ = std::make_unique<prometheus::Exposer>("127.0.0.1:0", 2, api_.callbacks());
    ASSERT_FALSE(exposer_->GetListeningPorts().empty());
    port_ = exposer_->GetListeningPorts().front();
    ASSERT_GT(port_, 0);
  }
  void TearDown() override { exposer_.reset(); }

  TempDir dir_;
  std::unique_ptr<TestRing> ring_;
  std::unique_ptr<LockHolder> holder_;
  Agent agent_{{dir_.path(), {}}};
  HttpApi api_{[this] { return agent_.StatusJson(); }, [this](std::string& out) { agent_.AppendMetricsText(out); }};
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

TEST_F(HttpApiTest, OtherPathsAreNotFound) {
  EXPECT_EQ(Request(port_, "GET", "/").status, 404);
  EXPECT_EQ(Request(port_, "GET", "/etc/passwd").status, 404);
  EXPECT_EQ(Request(port_, "GET", "/api/status/x").status, 404);
}

TEST_F(HttpApiTest, RefusesOtherMethodsOnStatus) { EXPECT_EQ(Request(port_, "POST", "/api/status").status, 405); }

TEST(HttpApiSingletonTest, OnlyOneInstanceAtATime) {
  const auto status = [] { return std::string("{}"); };
  const auto metrics = [](std::string&) {};
  HttpApi first(status, metrics);
  EXPECT_THROW(HttpApi(status, metrics), std::logic_error);
}

}  // namespace
}  // namespace loopwatch::agent
