// Backbones and projector: torchvision's parameter names and counts, shapes for each stem, and a
// backward pass that reaches every parameter.
#include "models/projector.h"
#include "models/resnet.h"
#include "serve/folded_resnet.h"

#include <torch/torch.h>

#include "check.h"

#include <iostream>
#include <set>
#include <stdexcept>
#include <string>

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

int64_t parameter_count(torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

std::set<std::string> state_keys(torch::nn::Module& module) {
  std::set<std::string> keys;
  for (const auto& item : module.named_parameters()) keys.insert(item.key());
  for (const auto& item : module.named_buffers()) keys.insert(item.key());
  return keys;
}

void test_torchvision_counts_and_names() {
  // torchvision's totals without the 1000-class fc layer (fc: 513,000 for 18/34, 2,049,000 for 50).
  struct Expected {
    const char* name;
    clamp::ResNetOptions options;
    int64_t parameters;
    int64_t features;
  };
  for (const Expected& e : {Expected{"resnet18", clamp::ResNetOptions::resnet18(), 11689512 - 513000, 512},
                            Expected{"resnet34", clamp::ResNetOptions::resnet34(), 21797672 - 513000, 512},
                            Expected{"resnet50", clamp::ResNetOptions::resnet50(), 25557032 - 2049000, 2048}}) {
    clamp::ResNet net(e.options);
    check(parameter_count(*net) == e.parameters, std::string(e.name) + ": " + std::to_string(parameter_count(*net)) +
                                                     " parameters, torchvision has " + std::to_string(e.parameters));
    check(net->feature_dim() == e.features, std::string(e.name) + ": feature dimension");
  }
  clamp::ResNet resnet18(clamp::ResNetOptions::resnet18());
  const auto keys = state_keys(*resnet18);
  for (const char* key : {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
                          "layer1.0.conv1.weight", "layer1.1.bn2.running_var", "layer2.0.downsample.0.weight",
                          "layer2.0.downsample.1.num_batches_tracked", "layer4.1.conv2.weight", "layer4.1.bn2.bias"}) {
    check(keys.count(key) == 1, std::string("resnet18 has torchvision's key ") + key);
  }
  // torchvision: 20 convolutions + 20 BatchNorms x 5 tensors = 120 keys, plus fc.weight and fc.bias.
  check(keys.size() == 120, "resnet18 has torchvision's 120 state keys without fc, got " + std::to_string(keys.size()));
  for (const auto& key : keys) check(key.rfind("fc.", 0) != 0, "no fc layer: " + key);
  clamp::ResNet resnet50(clamp::ResNetOptions::resnet50());
  const auto keys50 = state_keys(*resnet50);
  check(keys50.count("layer3.5.conv3.weight") == 1 && keys50.count("layer1.0.downsample.0.weight") == 1,
        "resnet50 bottleneck keys follow torchvision");
  check(resnet50->named_parameters()["layer2.0.conv2.weight"].size(0) == 128 &&
            resnet50->named_parameters()["layer2.0.conv3.weight"].size(0) == 512,
        "resnet50 bottleneck widths (x4 expansion)");
}

void test_stems_and_shapes() {
  torch::NoGradGuard no_grad;
  clamp::ResNet cifar(clamp::ResNetOptions::resnet18().set_stem(clamp::ResNetStem::cifar));
  check(cifar->named_parameters()["conv1.weight"].sizes() == torch::IntArrayRef({64, 3, 3, 3}), "cifar stem is 3x3");
  check(parameter_count(*cifar) == 11176512 - 9408 + 1728, "cifar stem parameter count");
  check(cifar->forward(torch::randn({2, 3, 32, 32})).sizes() == torch::IntArrayRef({2, 512}), "cifar: [2, 512] features");
  clamp::ResNet imagenet(clamp::ResNetOptions::resnet18());
  check(imagenet->named_parameters()["conv1.weight"].sizes() == torch::IntArrayRef({64, 3, 7, 7}), "imagenet stem is 7x7");
  check(imagenet->forward(torch::randn({1, 3, 64, 64})).sizes() == torch::IntArrayRef({1, 512}), "imagenet: [1, 512]");
  clamp::ResNet small(clamp::ResNetOptions::small().set_in_channels(1));
  check(small->forward(torch::randn({3, 1, 28, 28})).sizes() == torch::IntArrayRef({3, 128}), "small: [3, 128] on 28x28");
  check(parameter_count(*small) < 1000000, "small stays under a million parameters: " + std::to_string(parameter_count(*small)));
}

void test_backward_reaches_everything() {
  clamp::ResNet net(clamp::ResNetOptions::small().set_in_channels(1));
  clamp::Projector head(clamp::ProjectorOptions{net->feature_dim(), {64}, 16});
  const torch::Tensor out = head->forward(net->forward(torch::randn({4, 1, 28, 28})));
  check(out.sizes() == torch::IntArrayRef({4, 16}), "projector output [4, 16]");
  out.pow(2).sum().backward();
  bool all = true;
  for (const auto& item : net->named_parameters())
    all = all && item.value().grad().defined() && item.value().grad().abs().sum().item<double>() > 0;
  for (const auto& item : head->named_parameters()) all = all && item.value().grad().defined();
  check(all, "every backbone and projector parameter gets a gradient");
  check(state_keys(*head) == std::set<std::string>{"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"},
        "projector keys: Linear-ReLU-Linear");
  clamp::Projector paper(clamp::ProjectorOptions{2048, {8192, 8192}, 512});
  check(parameter_count(*paper) == (2048 * 8192 + 8192) + (8192 * 8192 + 8192) + (8192 * 512 + 512), "the paper's ImageNet projector size");
}

void test_bad_arguments() {
  check_throws([] { clamp::ResNetOptions::named("vgg16"); }, "resnet18, resnet34, resnet50 or small", "unknown backbone");
  clamp::ResNet net(clamp::ResNetOptions::small().set_in_channels(1));
  check_throws([&] { net->forward(torch::randn({2, 3, 28, 28})); }, "[N, 1, H, W]", "wrong channel count");
  check_throws([&] { net->forward(torch::randn({1, 28, 28})); }, "3-D input", "missing batch dimension");
  clamp::Projector head(clamp::ProjectorOptions{128, {64}, 16});
  check_throws([&] { head->forward(torch::randn({2, 64})); }, "[N, 128]", "projector input width");
}

}  // namespace

// The BatchNorm-free test model: no BatchNorm state at all, the same convolutions, and an output that
// does not depend on the other images of the batch; serving refuses it.
void test_batch_norm_free() {
  clamp::ResNetOptions options = clamp::ResNetOptions::small();
  options.in_channels = 1;
  options.batch_norm = false;
  clamp::ResNet net(options);
  bool any_norm = false;
  for (const auto& item : net->named_parameters()) any_norm = any_norm || item.key().find("bn") != std::string::npos;
  for (const auto& item : net->named_buffers()) any_norm = any_norm || item.key().find("bn") != std::string::npos;
  check(!any_norm && net->named_buffers().size() == 0, "a BatchNorm-free ResNet holds no BatchNorm parameters or buffers");
  check(net->named_parameters().contains("layer2.0.downsample.0.weight"), "its convolutions keep torchvision's names");
  const at::Tensor images = at::randn({4, 1, 28, 28});
  const at::Tensor together = net->forward(images), alone = net->forward(images.slice(0, 0, 2));
  check(at::allclose(together.slice(0, 0, 2), alone, 1e-5, 1e-6), "in training mode an image's features do not depend on its batch");
  check_throws([&] { clamp::FoldedResNet folded(*net); }, "serving needs a backbone with BatchNorm", "the serving graph refuses it");
}

int main() {
  torch::manual_seed(0);
  test_torchvision_counts_and_names();
  test_stems_and_shapes();
  test_backward_reaches_everything();
  test_bad_arguments();
  test_batch_norm_free();
  return clamp::testing::summary();
}
