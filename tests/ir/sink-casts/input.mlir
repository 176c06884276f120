// Linalg graph IR of @g
func.func @g(%x: tensor<4x8xf32>) -> (tensor<1x4xf64>, tensor<1x4x8xf64>) {
  %e = tensor.empty() : tensor<4x8xf64>
  %w = linalg.generic @elementwise_1 {domain = [4, 8], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x8xf32>) outs(%e : tensor<4x8xf64>) {
  ^bb0(%a: f32, %o: f64):
    %w = arith.extf %a : f64
    linalg.yield %w
  } -> tensor<4x8xf64>
  %w3 = tensor.expand_shape %w [[0, 1], [2]] : tensor<4x8xf64> -> tensor<1x4x8xf64>
  %z = tensor.empty() : tensor<1x4xf64>
  %ss = linalg.generic @reduce_sum_1 {domain = [1, 4, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%w3 : tensor<1x4x8xf64>) outs(%z : tensor<1x4xf64>) {
  ^bb0(%a0: f64, %acc: f64):
    %sq = arith.mulf %a0, %a0 : f64
    %s = arith.addf %sq, %acc : f64
    linalg.yield %s
  } -> tensor<1x4xf64>
  %e3 = tensor.empty() : tensor<1x4x8xf64>
  %neg = linalg.generic @elementwise_2 {domain = [1, 4, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%w3 : tensor<1x4x8xf64>) outs(%e3 : tensor<1x4x8xf64>) {
  ^bb0(%a0: f64, %o: f64):
    %n = arith.negf %a0 : f64
    linalg.yield %n
  } -> tensor<1x4x8xf64>
  return %ss, %neg
}
