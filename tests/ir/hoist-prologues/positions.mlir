// Linalg graph IR of @g
func.func @g(%x: tensor<64xi64>, %w: tensor<32x64xf32>) -> (tensor<32xf32>) {
  %e_y = tensor.empty() : tensor<32xf32>
  %z = linalg.generic @fill_1 {domain = [32], indexing_maps = [affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins() outs(%e_y : tensor<32xf32>) {
  ^bb0(%o: f32):
    %c = arith.constant {value = 0.0} : f32
    linalg.yield %c
  } -> tensor<32xf32>
  %y = linalg.generic @matmul_1 {domain = [32, 64], indexing_maps = [affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<64xi64>, %w : tensor<32x64xf32>) outs(%z : tensor<32xf32>) {
  ^bb0(%a: i64, %b: f32, %acc: f32):
    %n = arith.sitofp %a : f32
    %t = math.cos %n : f32
    %p = arith.mulf %t, %b : f32
    %sum = arith.addf %acc, %p : f32
    linalg.yield %sum
  } -> tensor<32xf32>
  return %y
}
