// Linalg graph IR of @g
func.func @g(%x: tensor<64xf32>, %s: tensor<f32>, %m: tensor<64xf32>, %w: tensor<32x64xi8>) -> (tensor<32xi32>) {
  %e_y = tensor.empty() : tensor<32xi32>
  %z = linalg.generic @fill_1 {domain = [32], indexing_maps = [affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins() outs(%e_y : tensor<32xi32>) {
  ^bb0(%o: i32):
    %c = arith.constant {value = 0} : i32
    linalg.yield %c
  } -> tensor<32xi32>
  %y = linalg.generic @matmul_1 {domain = [32, 64], indexing_maps = [affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> ()>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<64xf32>, %s : tensor<f32>, %m : tensor<64xf32>, %w : tensor<32x64xi8>) outs(%z : tensor<32xi32>) {
  ^bb0(%a: f32, %r: f32, %g: f32, %b: i8, %acc: i32):
    %n = arith.mulf %a, %r : f32
    %q = arith.mulf %n, %g : f32
    %t = math.roundeven %q : f32
    %lo = arith.constant {value = -128.0} : f32
    %u = arith.maximumf %t, %lo : f32
    %hi = arith.constant {value = 127.0} : f32
    %v = arith.minimumf %u, %hi : f32
    %i = arith.fptosi %v : i8
    %j = arith.extsi %i : i32
    %k = arith.extsi %b : i32
    %p = arith.muli %j, %k : i32
    %sum = arith.addi %acc, %p : i32
    linalg.yield %sum
  } -> tensor<32xi32>
  return %y
}
