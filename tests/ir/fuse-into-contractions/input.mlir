// Linalg graph IR of @g
func.func @g(%x: tensor<4x8xf32>, %w: tensor<8xf32>, %w1: tensor<8x6xf32>, %w2: tensor<8x6xf32>) -> (tensor<4x6xf32>, tensor<4x6xf32>) {
  %e_s = tensor.empty() : tensor<4xf32>
  %s = linalg.generic @reduce_sum_1 {domain = [4, 8], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x8xf32>) outs(%e_s : tensor<4xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %sq = arith.mulf %a, %a : f32
    %t = arith.addf %acc, %sq : f32
    linalg.yield %t
  } -> tensor<4xf32>
  %e_n = tensor.empty() : tensor<4x8xf32>
  %n = linalg.generic @scale_1 {domain = [4, 8], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x8xf32>, %s : tensor<4xf32>, %w : tensor<8xf32>) outs(%e_n : tensor<4x8xf32>) {
  ^bb0(%a: f32, %r: f32, %g: f32, %o: f32):
    %p = arith.mulf %a, %r : f32
    %q = arith.mulf %p, %g : f32
    linalg.yield %q
  } -> tensor<4x8xf32>
  %e_y = tensor.empty() : tensor<4x6xf32>
  %z = linalg.generic @fill_1 {domain = [4, 6], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins() outs(%e_y : tensor<4x6xf32>) {
  ^bb0(%o: f32):
    %c = arith.constant {value = 0.0} : f32
    linalg.yield %c
  } -> tensor<4x6xf32>
  %y1 = linalg.generic @matmul_1 {domain = [4, 6, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%n : tensor<4x8xf32>, %w1 : tensor<8x6xf32>) outs(%z : tensor<4x6xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s
  } -> tensor<4x6xf32>
  %y2 = linalg.generic @matmul_2 {domain = [4, 6, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%n : tensor<4x8xf32>, %w2 : tensor<8x6xf32>) outs(%z : tensor<4x6xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s
  } -> tensor<4x6xf32>
  return %y1, %y2
}
